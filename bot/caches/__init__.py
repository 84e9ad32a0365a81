"""Local SQL mirrors of Feishu documents: sources, fetching, storing, syncing."""
