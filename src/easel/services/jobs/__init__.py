"""Jobs: admission, planning, prompts, the job service, its events and storage health."""
