"""Event intake: verify a Feishu delivery (`parse`), record it durably once (`recorder`,
`receipts`), queue it (`schedule`), run its handler in a worker (`processing`, by the names in
`routes`), and pick up what was left behind (`sweep`)."""
