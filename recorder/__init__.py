"""Getting data in: the `record` command and the Kiwoom client driver."""
