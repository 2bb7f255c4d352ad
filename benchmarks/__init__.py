"""Speed and memory of this project against other MAML implementations, on the same work.

work.py defines the work once (the rows, read from the experiments table, with the queries per class
that every implementation processes); harness.py times a step the same way in every process;
peers/ holds the other implementations; compare.py runs them all one after another.
"""
