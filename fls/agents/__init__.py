"""Loading anything that acts: fls runs, SB3 zips, rl-zoo3 folders (safe by default), as an :class:`Agent`."""
