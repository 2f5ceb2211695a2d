"""Generated from proto/wallet (package wallet). Do not edit: run generate.sh."""
