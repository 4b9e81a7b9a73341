"""Screening imported and exported data for data attacks.

Four detectors read a ``Corpus`` (the prompts, replies and preference pairs of an import batch or
of a snapshot's selected submissions) and return ``Finding`` objects:

- ``triggers``: a rare word n-gram of the prompts whose items carry anomalous labels far more often
  than the rest (trigger-phrase poisoning);
- ``encoded``: base64, hex, URL-encoded, ``\\u`` escapes, rot13 and hidden Unicode (bidi, zero-width,
  tag characters) with a decoded preview;
- ``suffixes``: token-salad suffixes at the end of prompts (GCG-style adversarial suffixes);
- ``floods``: clusters of near-duplicate prompts (MinHash over word shingles).

``service`` runs them, stores ``DataScan`` / ``DataFinding`` rows and excludes a finding's tasks
from future snapshots (``TaskExclusion``). Everything is vectorised over the whole corpus so the
cost grows linearly with it (bench/screening.py).
"""
