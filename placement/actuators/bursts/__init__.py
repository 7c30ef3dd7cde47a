"""Cloud bursts: a Pulumi stack per burst that adds GPU capacity before its workload is placed."""
