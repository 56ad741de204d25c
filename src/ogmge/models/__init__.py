"""ogmge.models"""
