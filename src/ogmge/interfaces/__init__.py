"""ogmge.interfaces"""
