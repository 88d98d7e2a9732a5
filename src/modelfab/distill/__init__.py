"""modelfab.distill"""
