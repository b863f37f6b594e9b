"""moodboard on a developer's machine: the `moodboard` CLI and its commands, `moodboard serve` with its
embedded moto stack and data folder, the demo catalog generator and the console helpers.

None of it ships to Lambda: it lives outside functions/, which is all the image and the evaluations
zip copy (tests/infra/test_dockerfile.py checks that what ships imports nothing from here).
"""
