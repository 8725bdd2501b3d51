"""The checkout's dashboard entry (``streamlit run app/Home.py``); the dashboard itself ships in the
package as :mod:`metalab.dashboard`, and ``metalab app`` starts it from any install."""

from metalab.dashboard.app import main

main()
