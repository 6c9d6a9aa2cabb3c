"""The application layer: new videos or a prepared dataset B scored with the backbones and saved ensemble of a
dataset A, nothing fitted on B. Between ``ensemble`` and ``evaluate``; ``evaluate predict`` and ``evaluate
transfer`` call it, and ``evaluate`` keeps the scoring and the reports."""
