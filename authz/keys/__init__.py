"""The API key as a value: its format (``format.py``), the record the check path reads
(``record.py``), scopes and what they grant (``scopes.py``), and the human durations and rates
(``durations.py``) keys are created with. Pure: nothing here does I/O.
"""
