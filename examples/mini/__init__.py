"""How easel-mini is made: the scene generator (data.py), its vocabulary (vocabulary.py),
training (train.py), and the checker that judges a picture against its prompt (checker.py,
evaluate.py). The model itself, as it is served, is easel.mini. docs/mini.md tells the story."""
