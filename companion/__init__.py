"""Companion package of the book *Understanding Open-Set Recognition by Jacobian Norm*.

One module per concern (see the book's chapters for the story they tell):

- ``runtime``: device, seeding, fast mode, data directory;
- ``data``: the standard open-set splits and ``load_osr`` for every dataset;
- ``metrics``: AUROC, OSCR, open-set macro-F1, accuracy, Davies-Bouldin index.

Convention used everywhere: **a higher score means "more likely known"**.
"""

__version__ = "0.1.0"
