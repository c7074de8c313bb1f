"""Robot and equipment control with deep reinforcement learning: environments, baseline controllers, the RL task."""
