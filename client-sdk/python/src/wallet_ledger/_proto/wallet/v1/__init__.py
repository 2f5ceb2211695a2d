"""Generated from proto/wallet/v1 (package wallet.v1). Do not edit: run generate.sh."""
