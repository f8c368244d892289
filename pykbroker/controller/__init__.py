"""The controller: replica assignment, leader election and the requests it sends."""
