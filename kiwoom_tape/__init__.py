"""The `kiwoom-tape` command group."""
