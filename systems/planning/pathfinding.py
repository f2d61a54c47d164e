"""Grid A* pathfinding and line of sight over a GridView. (Helper H1 implements.)"""
