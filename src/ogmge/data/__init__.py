"""ogmge.data"""
