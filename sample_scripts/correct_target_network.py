"""Trains a DQN-style Q-network on synthetic transitions with a separate target network.

The target network is a ``copy.deepcopy`` of the policy network: it is not frozen
and not in any optimizer, it is only evaluated under ``torch.no_grad()`` to build
the TD targets, and it is synced from the policy network every few steps. Its
parameters never get gradients by design; there is no bug and gradcheck should
report nothing.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F


def main():
    torch.manual_seed(0)
    state_dim, num_actions, batch_size, gamma = 6, 3, 64, 0.99
    states = torch.randn(batch_size, state_dim)
    actions = torch.randint(0, num_actions, (batch_size, 1))
    rewards = torch.randn(batch_size)
    next_states = torch.randn(batch_size, state_dim)
    dones = (torch.rand(batch_size) < 0.1).float()

    policy_net = nn.Sequential(nn.Linear(state_dim, 32), nn.ReLU(), nn.Linear(32, num_actions))
    target_net = copy.deepcopy(policy_net)
    optimizer = torch.optim.Adam(policy_net.parameters(), lr=1e-3)

    for step in range(8):
        q_values = policy_net(states).gather(1, actions).squeeze(1)
        with torch.no_grad():
            next_q = target_net(next_states).max(dim=1).values
            targets = rewards + gamma * next_q * (1.0 - dones)
        loss = F.smooth_l1_loss(q_values, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 4 == 3:
            target_net.load_state_dict(policy_net.state_dict())
        print(f"step {step}: td loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
