"""The evaluations Lambda (handler `evaluations.app.handler`): ratings, admin reads, search URLs, loads."""
