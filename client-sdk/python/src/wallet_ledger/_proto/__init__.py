"""Generated from proto/ by generate.sh. Do not edit."""
