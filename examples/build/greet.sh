#!/bin/sh
# Prints the greeting given as $1.
echo "$1 from a unionrs build"
