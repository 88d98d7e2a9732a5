"""modelfab.bench"""
