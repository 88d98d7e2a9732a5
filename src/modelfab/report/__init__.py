"""modelfab.report"""
