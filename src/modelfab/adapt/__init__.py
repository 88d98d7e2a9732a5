"""modelfab.adapt"""
