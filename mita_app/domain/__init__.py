"""The product's rules as plain functions over plain values (dates, Decimals, strings).

Nothing here imports Flask or the database session: a view or service loads rows, calls a rule,
and serialises what it returns. Each rule is tested by the hundred with hypothesis.
"""
