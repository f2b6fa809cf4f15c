#!/bin/sh
# being written
echo "1..0 # SKIP the workbench is being written"
