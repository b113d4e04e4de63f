"""What a run leaves behind: probe and bench records, their layout, merging, feature rows, claims."""
