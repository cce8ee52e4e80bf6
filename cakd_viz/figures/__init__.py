"""Plotly figure builders. Each takes a computed result (never raw logits to recompute) plus display
options and returns a `plotly.graph_objects.Figure`. No Streamlit here."""
