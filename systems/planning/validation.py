"""Plan validation. (Helper H2 implements.)"""
