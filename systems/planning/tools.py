"""Tool registry. (Helper H2 implements.)"""
