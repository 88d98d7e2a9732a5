"""modelfab.registry"""
