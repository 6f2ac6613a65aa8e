"""Expert notifications: compose the email (``compose``) and deliver it (``smtp``).

When an item is routed to an internal expert, Relais emails them everything
needed to answer in a minute, with a button to the one-click reply page.
"""
