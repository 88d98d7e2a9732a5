"""modelfab.teachers"""
