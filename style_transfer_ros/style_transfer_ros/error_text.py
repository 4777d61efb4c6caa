"""How error messages repeat what they were given: clipped, so a huge request or parameter
value cannot flood replies and logs. A leaf module (the standard library only)."""

MAX_ECHO = 80  # characters of a request repeated in an error message


def clip(text):
    """text cut to MAX_ECHO characters."""
    text = str(text)
    return text[:MAX_ECHO] + '...' if len(text) > MAX_ECHO else text


def echo(value):
    """repr(value), clipped: how a refused parameter value appears in its error."""
    return clip(repr(value))
