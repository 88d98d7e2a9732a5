"""modelfab.pipeline"""
