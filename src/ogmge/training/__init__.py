"""ogmge.training"""
