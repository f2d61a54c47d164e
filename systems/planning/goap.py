"""GOAP planner. (Helper H1 implements.)"""
