# cell: evaluate_accuracy
# item: 3
# fair: 0
# reason: left the net in training mode
def evaluate_accuracy(net, data_iter, device):
    net.eval()
    hits = n = 0
    with torch.no_grad():
        for X, y in data_iter:
            X, y = X.to(device), y.to(device)
            hits += (net(X).argmax(dim=1) == y).sum().item()
            n += y.numel()
    net.train()  # always back to training mode, whatever it was in
    return hits / n
