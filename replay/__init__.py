"""Getting data out: the mock Kiwoom server, the simulated market and recorded-session replay."""
