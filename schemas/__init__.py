"""What the data is: protocol envelopes and sessions, field tables, stored schemas, layout. Pure, no I/O."""
