"""modelfab.export"""
