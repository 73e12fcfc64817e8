"""Training loops and what feeds them."""
