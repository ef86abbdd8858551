"""The search: checked inputs, the round loop, the confirmation, the final fit.

- ``settings``: the run's settings and their checks;
- ``checks``: model, optimizer and training-step checks before anything compiles;
- ``engine``: the checked inputs and each bucket's population;
- ``rounds``: the round loop (resume, round, commit, confirm, finish);
- ``confirmation``: the top configurations retrained with fresh seeds;
- ``final_fit``: the chosen configuration trained alone and the test split read once;
- ``results``: :class:`RoundResult` and :class:`TuneResult`.
"""
