"""modelfab.data"""
