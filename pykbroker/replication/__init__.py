"""ISR replication: the leader's side of follower fetches, the followers' fetchers, and the
ISR changes the leader asks the controller for (AlterPartition)."""
