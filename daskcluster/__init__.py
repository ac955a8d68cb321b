"""daskcluster"""
