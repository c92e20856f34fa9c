"""A script with a syntax error on line 5."""

import sys

def train(:
    pass
