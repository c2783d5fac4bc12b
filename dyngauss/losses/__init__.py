"""Training losses: photometric, and the motion losses (flow, cycle, rigidity, elastic)."""
