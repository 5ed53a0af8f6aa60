"""Headroom's Streamlit dashboard (`streamlit run dashboard/app.py`): widgets, caching and plots.

It holds no science: every number comes from `analysis`.
"""
