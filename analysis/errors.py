"""Errors a user can cause. Each carries one clear sentence: what was wrong and what to do."""


class HeadroomError(Exception):
    """A problem with the user's input (model, data, recipe, file). The message is shown as is."""
