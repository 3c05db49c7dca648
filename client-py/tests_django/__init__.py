"""Django tests of sessiond.django: Django's own session tests (fetched at
test time, never copied here) and ours, against the real daemon. Run with
``bash client-py/tests_django/run.sh``."""
